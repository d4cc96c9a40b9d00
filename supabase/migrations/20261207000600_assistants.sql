-- Assistants (issue 26): per application or conversation, an assistant with its
-- own instructions, tools, greeting and suggested questions; every edit is a new
-- version and every version is kept. Idempotent. Both backends call these
-- functions (`select fn(...)` / `rpc()`).

create table if not exists public.assistants (
    id text primary key,
    name text not null,
    description text not null default '',
    instructions text not null,
    model text,                                     -- null: the server's model
    tools jsonb,                                    -- tool names; null: every tool
    greeting text,                                  -- null: the server's greeting
    suggested_questions jsonb not null default '[]'::jsonb,
    max_answer_chars integer,                       -- null: MAX_ANSWER_CHARS
    applications jsonb not null default '[]'::jsonb,
    public boolean not null default true,
    suggestions boolean not null default true,     -- follow-up suggestions after answers
    is_default boolean not null default false,
    version integer not null default 1,
    created_at timestamptz not null default clock_timestamp(),
    updated_at timestamptz not null default clock_timestamp()
);
create unique index if not exists assistants_default_idx on public.assistants ((true))
    where is_default;

-- Every version as it was. No foreign key: a deleted assistant's versions stay,
-- so runs can still say which version wrote an answer.
create table if not exists public.assistant_versions (
    assistant_id text not null,
    version integer not null,
    assistant jsonb not null,
    created_at timestamptz not null default clock_timestamp(),
    primary key (assistant_id, version)
);

alter table public.assistants enable row level security;
alter table public.assistant_versions enable row level security;

alter table public.conversations add column if not exists assistant_id text
    references public.assistants (id) on delete set null;
alter table public.chat_messages add column if not exists suggestions jsonb;  -- follow-ups
alter table public.runs add column if not exists assistant_id text;
alter table public.runs add column if not exists assistant_version integer;

-- An assistant as clients see it.
create or replace function public.jelly_assistant_json(a public.assistants)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'id', a.id, 'name', a.name, 'description', a.description,
        'instructions', a.instructions, 'model', a.model, 'tools', a.tools,
        'greeting', a.greeting, 'suggested_questions', a.suggested_questions,
        'max_answer_chars', a.max_answer_chars, 'applications', a.applications,
        'public', a.public, 'suggestions', a.suggestions, 'default', a.is_default,
        'version', a.version, 'created_at', a.created_at, 'updated_at', a.updated_at)
$$;

-- The fields of p_fields over those of p_base (present keys win, even as null).
create or replace function public.jelly_assistant_merge(p_base public.assistants, p_fields jsonb)
returns public.assistants
language plpgsql
stable
set search_path = ''
as $$
declare
    v public.assistants := p_base;
begin
    if p_fields ? 'name' then v.name := p_fields ->> 'name'; end if;
    if p_fields ? 'description' then
        v.description := coalesce(p_fields ->> 'description', '');
    end if;
    if p_fields ? 'instructions' then v.instructions := p_fields ->> 'instructions'; end if;
    if p_fields ? 'model' then v.model := p_fields ->> 'model'; end if;
    if p_fields ? 'tools' then
        v.tools := case when jsonb_typeof(p_fields -> 'tools') = 'array'
                        then p_fields -> 'tools' end;
    end if;
    if p_fields ? 'greeting' then v.greeting := p_fields ->> 'greeting'; end if;
    if p_fields ? 'suggested_questions' then
        v.suggested_questions := coalesce(nullif(p_fields -> 'suggested_questions', 'null'),
                                          '[]'::jsonb);
    end if;
    if p_fields ? 'max_answer_chars' then
        v.max_answer_chars := (p_fields ->> 'max_answer_chars')::integer;
    end if;
    if p_fields ? 'applications' then
        v.applications := coalesce(nullif(p_fields -> 'applications', 'null'), '[]'::jsonb);
    end if;
    if p_fields ? 'public' then
        v.public := coalesce((p_fields ->> 'public')::boolean, true);
    end if;
    if p_fields ? 'suggestions' then
        v.suggestions := coalesce((p_fields ->> 'suggestions')::boolean, true);
    end if;
    return v;
end;
$$;

-- Store an assistant (new, or a new version) and its version row.
create or replace function public.jelly_assistant_save(p_row public.assistants, p_new boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_json jsonb;
begin
    if p_new then
        insert into public.assistants select p_row.*;
    else
        update public.assistants a set name = p_row.name, description = p_row.description,
            instructions = p_row.instructions, model = p_row.model, tools = p_row.tools,
            greeting = p_row.greeting, suggested_questions = p_row.suggested_questions,
            max_answer_chars = p_row.max_answer_chars, applications = p_row.applications,
            public = p_row.public, suggestions = p_row.suggestions, version = p_row.version,
            updated_at = p_row.updated_at
        where a.id = p_row.id;
    end if;
    v_json := public.jelly_assistant_json(p_row);
    insert into public.assistant_versions (assistant_id, version, assistant, created_at)
    values (p_row.id, p_row.version, v_json, p_row.updated_at)
    on conflict do nothing;
    return v_json;
end;
$$;

-- A new assistant at version 1 (p_id null: a generated id).
create or replace function public.jelly_create_assistant(
    p_fields jsonb, p_id text default null, p_default boolean default false
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v public.assistants;
    v_now timestamptz := clock_timestamp();
begin
    v.id := coalesce(p_id, gen_random_uuid()::text);
    if exists (select 1 from public.assistants a where a.id = v.id) then
        raise exception 'assistant % exists', v.id using errcode = 'JL409';
    end if;
    v.description := '';
    v.suggested_questions := '[]'::jsonb;
    v.applications := '[]'::jsonb;
    v.public := true;
    v.suggestions := true;
    v := public.jelly_assistant_merge(v, p_fields);
    v.is_default := p_default;
    v.version := 1;
    v.created_at := v_now;
    v.updated_at := v_now;
    return public.jelly_assistant_save(v, true);
end;
$$;

-- The default assistant, created from p_fields when there is none yet; its row
-- (which may have been edited since) either way.
create or replace function public.jelly_seed_assistant(p_id text, p_fields jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v public.assistants;
begin
    perform pg_advisory_xact_lock(7324026);
    select * into v from public.assistants a where a.is_default;
    if v.id is not null then
        return public.jelly_assistant_json(v);
    end if;
    return public.jelly_create_assistant(p_fields, p_id, true);
end;
$$;

-- A new version of an assistant: the given fields over the current ones.
create or replace function public.jelly_update_assistant(p_id text, p_fields jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v public.assistants;
begin
    select * into v from public.assistants a where a.id = p_id for update;
    if v.id is null then
        raise exception 'assistant not found' using errcode = 'JL404';
    end if;
    v := public.jelly_assistant_merge(v, p_fields);
    v.version := v.version + 1;
    v.updated_at := clock_timestamp();
    return public.jelly_assistant_save(v, false);
end;
$$;

-- Delete an assistant (not the default one): its conversations fall back to the
-- next rule; its versions stay.
create or replace function public.jelly_delete_assistant(p_id text)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    if exists (select 1 from public.assistants a where a.id = p_id and a.is_default) then
        raise exception 'the default assistant cannot be deleted' using errcode = 'JL409';
    end if;
    delete from public.assistants a where a.id = p_id;
    if not found then
        raise exception 'assistant not found' using errcode = 'JL404';
    end if;
    return jsonb_build_object('deleted', p_id);
end;
$$;

-- An assistant (p_version null: as it is now; else that version, even of a
-- deleted assistant), or null.
create or replace function public.jelly_get_assistant(p_id text, p_version integer default null)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select case when p_version is null
        then (select public.jelly_assistant_json(a) from public.assistants a where a.id = p_id)
        else (select v.assistant from public.assistant_versions v
              where v.assistant_id = p_id and v.version = p_version) end
$$;

-- The assistants (p_all false: the public ones), the default first.
create or replace function public.jelly_list_assistants(p_all boolean default false)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(public.jelly_assistant_json(a)
                              order by a.is_default desc, a.created_at, a.id), '[]'::jsonb)
    from public.assistants a where a.public or p_all
$$;

-- Every version of an assistant, oldest first ([] for an unknown one).
create or replace function public.jelly_assistant_versions(p_id text)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(v.assistant order by v.version), '[]'::jsonb)
    from public.assistant_versions v where v.assistant_id = p_id
$$;

-- The assistant for a turn, first match wins: the message's, the conversation's
-- (p_conversation_id null: the user's default conversation), the one serving
-- the application, the default. An unknown p_assistant_id is an error (JLA04:
-- the client named an assistant that does not exist).
create or replace function public.jelly_choose_assistant(
    p_assistant_id text, p_token text, p_conversation_id uuid, p_application text
)
returns public.assistants
language plpgsql
stable
set search_path = ''
as $$
declare
    v public.assistants;
begin
    if p_assistant_id is not null then
        select * into v from public.assistants a where a.id = p_assistant_id;
        if v.id is null then
            raise exception 'assistant not found' using errcode = 'JLA04';
        end if;
        return v;
    end if;
    select a.* into v from public.conversations c
    join public.users u on u.id = c.user_id
    join public.assistants a on a.id = c.assistant_id
    where u.token = p_token
      and (c.id = p_conversation_id or (p_conversation_id is null and c.is_default));
    if v.id is not null then
        return v;
    end if;
    if p_application is not null then
        select * into v from public.assistants a where a.applications ? p_application
        order by a.is_default desc, a.created_at, a.id limit 1;
        if v.id is not null then
            return v;
        end if;
    end if;
    select * into v from public.assistants a where a.is_default;
    return v;
end;
$$;

-- The assistant a new visitor of an application is greeted by: {id, name, greeting}.
create or replace function public.jelly_assistant_for(p_application text default null)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select public.jelly_assistant_json(
        public.jelly_choose_assistant(null, null, null, p_application))
$$;

-- Bind a conversation of the token's user to an assistant (null: unbind).
create or replace function public.jelly_set_conversation_assistant(
    p_token text, p_id uuid, p_assistant_id text
)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    if p_assistant_id is not null
       and not exists (select 1 from public.assistants a where a.id = p_assistant_id) then
        raise exception 'assistant not found' using errcode = 'JLA04';
    end if;
    update public.conversations c set assistant_id = p_assistant_id,
        updated_at = clock_timestamp()
    from public.users u
    where c.id = p_id and u.id = c.user_id and u.token = p_token;
    if not found then
        raise exception 'conversation not found' using errcode = 'JL404';
    end if;
    return public.jelly_conversation_json(p_id);
end;
$$;

-- A conversation as clients see it, now with its assistant.
create or replace function public.jelly_conversation_json(p_id uuid)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'id', c.id,
        'title', c.title,
        'created', c.created_at,
        'updated', c.updated_at,
        'message_count', (select count(*) from public.chat_messages m
                          where m.conversation_id = c.id and m.type in ('human', 'jelly')),
        'preview', (select left(m.content, 120) from public.chat_messages m
                    where m.conversation_id = c.id and m.type in ('human', 'jelly')
                    order by m.id desc limit 1),
        'assistant_id', c.assistant_id
    )
    from public.conversations c where c.id = p_id
$$;

-- jelly_start_run with the turn's assistant chosen in the same call (no round trip
-- more before the first token): the ticket carries `assistant` {id, version}, and
-- the run stores them. A new user's greeting is that assistant's, when it has one.
drop function if exists public.jelly_start_run(text, text, uuid, text, text, text, text, text,
                                               integer, double precision);
create or replace function public.jelly_start_run(
    p_token text,
    p_greeting text,
    p_conversation_id uuid default null,
    p_application text default null,
    p_multitask text default 'enqueue',
    p_owner text default null,
    p_model text default null,
    p_message text default null,
    p_memory integer default 10,
    p_timeout double precision default 120,
    p_assistant_id text default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_ticket jsonb;
    v_assistant public.assistants;
begin
    perform set_config('synchronous_commit', 'off', true);
    v_assistant := public.jelly_choose_assistant(p_assistant_id, p_token, p_conversation_id,
                                                 p_application);
    v_ticket := public.jelly_create_run(p_token, coalesce(v_assistant.greeting, p_greeting),
                                        p_conversation_id, p_application, p_multitask, p_owner,
                                        p_model);
    if v_assistant.id is not null then
        update public.runs set assistant_id = v_assistant.id,
            assistant_version = v_assistant.version
        where id = (v_ticket ->> 'run_id')::uuid;
        v_ticket := v_ticket || jsonb_build_object('assistant', jsonb_build_object(
            'id', v_assistant.id, 'version', v_assistant.version));
    end if;
    if (v_ticket ->> 'queued')::boolean then
        return v_ticket || jsonb_build_object('ready', false);
    end if;
    return v_ticket || public.jelly_begin_run((v_ticket ->> 'run_id')::uuid, p_message,
                                              p_memory, p_timeout);
end;
$$;

-- The follow-up questions suggested after an answer (at most three are kept).
create or replace function public.jelly_set_suggestions(p_message_id bigint, p_suggestions jsonb)
returns void
language sql
set search_path = ''
as $$
    update public.chat_messages m set suggestions = coalesce(p_suggestions, '[]'::jsonb)
    where m.id = p_message_id and m.type = 'jelly'
$$;

-- The suggestions after one of the token's user's answers ([] before any were made).
create or replace function public.jelly_suggestions_of(p_token text, p_message_id bigint)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
    v_found jsonb;
    v_exists boolean;
begin
    select true, m.suggestions into v_exists, v_found from public.chat_messages m
    join public.users u on u.id = m.user_id
    where m.id = p_message_id and u.token = p_token and m.type = 'jelly';
    if v_exists is null then
        raise exception 'message not found' using errcode = 'JL404';
    end if;
    return jsonb_build_object('message_id', p_message_id,
                              'suggestions', coalesce(v_found, '[]'::jsonb));
end;
$$;

select public.jelly_server_only(array[
        'public.jelly_set_suggestions(bigint, jsonb)',
        'public.jelly_suggestions_of(text, bigint)',
        'public.jelly_assistant_json(public.assistants)',
        'public.jelly_assistant_merge(public.assistants, jsonb)',
        'public.jelly_assistant_save(public.assistants, boolean)',
        'public.jelly_create_assistant(jsonb, text, boolean)',
        'public.jelly_seed_assistant(text, jsonb)',
        'public.jelly_update_assistant(text, jsonb)',
        'public.jelly_delete_assistant(text)',
        'public.jelly_get_assistant(text, integer)',
        'public.jelly_list_assistants(boolean)',
        'public.jelly_assistant_versions(text)',
        'public.jelly_choose_assistant(text, text, uuid, text)',
        'public.jelly_assistant_for(text)',
        'public.jelly_set_conversation_assistant(text, uuid, text)',
        'public.jelly_conversation_json(uuid)',
        'public.jelly_start_run(text, text, uuid, text, text, text, text, text, integer, double precision, text)'
    ]);

notify pgrst, 'reload schema';
